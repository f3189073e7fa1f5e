From ubuntu:20.04 As Builder
Run apt-get update
Copy --From=builder /a /b
eNtRyPoInT ["/bin/sh"]
