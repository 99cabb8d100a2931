#!/bin/sh
# shellcheck shell=sh
#
# Test-only dracut initqueue/settled hook: udev's coldplug has settled, so every driver that
# would bind has bound. Report on the second serial port; the reporter powers off.

/usr/bin/vfio-test-report
