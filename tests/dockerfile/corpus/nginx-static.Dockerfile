FROM node:lts AS build
WORKDIR /app
COPY . .
RUN yarn install --frozen-lockfile && yarn build

FROM nginx:1.25-alpine
COPY --from=build /app/build /usr/share/nginx/html
COPY nginx.conf /etc/nginx/conf.d/default.conf
EXPOSE 80
CMD ["nginx", "-g", "daemon off;"]
