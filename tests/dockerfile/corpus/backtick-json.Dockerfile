# escape=`
FROM mcr.microsoft.com/powershell
SHELL ["pwsh", "-Command"]
RUN Write-Host "a\b" ; `
    Write-Host `"quoted`"
ENTRYPOINT ["pwsh", "-File", "C:\\start.ps1"]
ENV PATH="C:\Program Files\app;${PATH}"
