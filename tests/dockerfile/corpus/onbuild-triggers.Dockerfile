FROM node:18
ONBUILD COPY package.json /app/
ONBUILD RUN npm install
ONBUILD COPY . /app/
ONBUILD ENV NODE_ENV=production
ONBUILD RUN ["npm", "run", "build"]
onbuild workdir /app
