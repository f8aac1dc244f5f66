# A stand-in for python:3.11-slim-bookworm, made from Debian packages (mmdebstrap writes
# rootfs.tar; scripts/images.py builds this with that tarball as the only file of the context).
# Used where no container registry is reachable: the tests build every image on it.
FROM scratch
ADD rootfs.tar /
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8
CMD ["python3"]
