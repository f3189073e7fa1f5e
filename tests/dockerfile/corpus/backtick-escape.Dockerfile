# escape=`
FROM mcr.microsoft.com/windows/servercore:ltsc2022
SHELL ["powershell", "-Command", "$ErrorActionPreference = 'Stop';"]
WORKDIR C:\app
COPY . C:\app
RUN Invoke-WebRequest https://example.com/x.zip -OutFile x.zip ; `
    Expand-Archive x.zip -DestinationPath C:\x ; `
    Remove-Item x.zip
ENV APP_HOME=C:\app `
    LOG_DIR=C:\logs
CMD ["powershell", "./run.ps1"]
