FROM alpine
RUN <<-EOT sh
	if true; then
		echo yes
	fi
	EOT
RUN cat <<-"X"
		tabbed $HOME
	X
