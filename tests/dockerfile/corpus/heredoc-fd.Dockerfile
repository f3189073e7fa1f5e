FROM alpine
RUN 3<<EOF sh -c 'cat <&3 > /out'
from fd three
EOF
RUN python3 <<'PY'
import sys
print(sys.version)
PY
