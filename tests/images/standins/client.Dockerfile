# The test client: Python with the chromadb client library, curl and a shell, for the pods the
# end-to-end suites run against the chart (the Chroma stand-in plus its venv on PATH).
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
ENV PATH=/opt/chroma/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HOME=/tmp
ENTRYPOINT []
CMD ["python3"]
