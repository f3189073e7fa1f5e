FROM php:8.2-apache
RUN docker-php-ext-install pdo pdo_mysql opcache \
 && a2enmod rewrite headers
COPY --from=composer:2 /usr/bin/composer /usr/bin/composer
COPY composer.json composer.lock /var/www/html/
RUN composer install --no-dev --prefer-dist --no-interaction --optimize-autoloader
COPY . /var/www/html/
RUN chown -R www-data:www-data /var/www/html/storage
ENV APACHE_DOCUMENT_ROOT /var/www/html/public
RUN sed -ri -e 's!/var/www/html!${APACHE_DOCUMENT_ROOT}!g' /etc/apache2/sites-available/*.conf
