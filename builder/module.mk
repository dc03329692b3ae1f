# builder/: `thaw build` writes OCI image layouts; layers are tars written
# with libarchive (libarchive-dev), blobs hashed with OpenSSL EVP SHA-256
# (libssl-dev).
DAEMON_LIBS += -larchive -lcrypto
