# syntax=docker/dockerfile:1
FROM	alpine:3.19 AS base
COPY --from=build /out/app /usr/local/bin/app
ENV \	
	LEGACY value with spaces
Arg  VERSION=1.0 COMMIT
