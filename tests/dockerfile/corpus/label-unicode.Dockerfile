FROM alpine
LABEL description="Ein schönes Bild — mit Umlauten" emoji="🐳"
LABEL 日本語="値"
