#!/usr/bin/env bash
# Completes one command line as interactive bash with bash-completion does, with the
# project's completion, and prints every candidate as the word it would become, one per line.
#   bash bash-complete.bash COMPLETION_FILE 'vfio-bind rule 0000:07'
# Readline splits words at spaces and at each ':' (COMP_WORDBREAKS), so COMP_WORDS is built
# the same way, and a candidate replaces only the text after the last break.
set -u
# shellcheck source=/dev/null
source /usr/share/bash-completion/bash_completion || exit 2
# shellcheck source=/dev/null
source "$1" || exit 2
COMP_LINE=$2
COMP_POINT=${#COMP_LINE}
read -ra COMP_WORDS <<<"${COMP_LINE//:/ : }"
[[ $COMP_LINE == *[\ :] ]] && COMP_WORDS+=('')
COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
spec=$(complete -p vfio-bind) || exit 2
function=${spec#*-F }
function=${function%% *}
"$function" vfio-bind "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD - 1]}" || exit 1
typed=${COMP_LINE%"${COMP_WORDS[COMP_CWORD]}"}
typed=${typed##* }
for candidate in "${COMPREPLY[@]}"; do
    printf '%s%s\n' "$typed" "$candidate"
done
