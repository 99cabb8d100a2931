# Completes one command line in a real interactive zsh (driven through zsh/zpty) with the
# project's _vfio-bind and prints every candidate zsh was offered, one per line, then the
# command line as the completion left it, on a last line starting with BUFFER:.
#   zsh -f zsh-complete.zsh COMPLETIONS_DIR 'vfio-bind rule '
# compadd is wrapped to record each candidate that matches what is typed (compadd -O, the
# matching zsh itself does), then called as usual; candidates are written to a file that
# the completion's last function marks done. Then Ctrl-X runs a widget that writes $BUFFER.
emulate -L zsh
zmodload zsh/zpty || exit 2
local dir=$1 line=$2 work=${TMPDIR:-/tmp}/vfio-bind-zsh-$$
mkdir -p $work || exit 2
local hits=$work/hits done=$work/done buffer=$work/buffer
: >$hits
zpty z zsh -f -i || exit 2
zpty -w z "PS1=''; PS2=''; unsetopt zle_bracketed_paste 2>/dev/null; fpath=(${(q)dir} \$fpath); autoload -Uz compinit; compinit -u -D"
zpty -w z "compadd() { if [[ \${(j: :)@} == *-[OAD]* ]]; then builtin compadd \"\$@\"; return; fi; local -a __hits; builtin compadd -O __hits \"\$@\"; print -rl -- \$__hits >>${(q)hits}; builtin compadd \"\$@\"; }"
zpty -w z "__vfio_bind_done() { : >${(q)done}; }; comppostfuncs=(__vfio_bind_done)"
zpty -w z "__vfio_bind_buffer() { print -r -- \"BUFFER:\$BUFFER\" >${(q)buffer}.tmp && mv ${(q)buffer}.tmp ${(q)buffer}; }; zle -N __vfio_bind_buffer; bindkey '^X' __vfio_bind_buffer"
zpty -w -n z "${line}"$'\t'
local waited=0 ignored
while [[ ! -e $done ]] && (( waited < 100 )); do
  zpty -rt z ignored 2>/dev/null
  sleep 0.05
  (( waited++ ))
done
if [[ -e $done ]]; then
  zpty -w -n z $'\C-x'
  waited=0
  while [[ ! -e $buffer ]] && (( waited < 100 )); do
    zpty -rt z ignored 2>/dev/null
    sleep 0.05
    (( waited++ ))
  done
fi
zpty -d z
if [[ ! -e $done || ! -e $buffer ]]; then
  print -u2 "zsh did not complete ${(qq)line} within 5 s"
  rm -rf $work
  exit 1
fi
sort -u $hits
cat $buffer
rm -rf $work
