FROM mcr.microsoft.com/windows/servercore:ltsc2019
SHELL ["cmd", "/S", "/C"]
RUN echo hello
SHELL ["powershell", "-NoProfile", "-Command"]
RUN Get-ChildItem
