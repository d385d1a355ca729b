#!/bin/bash
# One SIPp call from the demo trunk (this VM) to an extension on the PBX VM, with the two
# demo phones answering (run on the sipp VM).
set -euo pipefail
ext=${1:-101}
pbx=${PBX_IP:-192.168.56.10}
me=$(hostname -I | tr ' ' '\n' | grep '^192\.168\.56\.' | head -1)
sipp -sn uas -i "$me" -p 5071 -m 1 -bg >/dev/null
sipp -sn uas -i "$me" -p 5072 -m 1 -bg >/dev/null
sipp -sn uac -i "$me" -p 5080 -s "$ext" -m 1 -d 2000 "$pbx:5060" -nostdin
