FROM alpine
COPY package.json yarn.lock .npmrc .yarnrc ./
COPY src/*.js lib/**/*.js /app/
COPY a b c d e f g /many/
