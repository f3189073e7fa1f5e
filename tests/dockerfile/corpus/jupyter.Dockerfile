FROM jupyter/scipy-notebook:latest
USER root
RUN apt-get update && apt-get install -yq --no-install-recommends \
    graphviz \
 && apt-get clean && rm -rf /var/lib/apt/lists/*
USER $NB_UID
RUN pip install --quiet --no-cache-dir graphviz && \
    fix-permissions "${CONDA_DIR}" && \
    fix-permissions "/home/${NB_USER}"
