# A real S3 API server (moto, the version the tests pin in constraints.txt) as an image, so that
# the end-to-end suites can run object storage as a pod of its own (behind a NetworkPolicy).
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
COPY constraints.txt /tmp/constraints.txt
RUN python -m venv /opt/moto \
 && /opt/moto/bin/pip install --only-binary=:all: -c /tmp/constraints.txt "moto[server]" \
 && /opt/moto/bin/python -m pip uninstall --yes pip \
 && rm /tmp/constraints.txt
ENV PATH=/opt/moto/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HOME=/tmp
USER 10001:10001
EXPOSE 5000
ENTRYPOINT ["moto_server"]
CMD ["-H", "0.0.0.0", "-p", "5000"]
