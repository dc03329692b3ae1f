# snapshot/: manifests hash with OpenSSL EVP SHA-256 (libssl-dev)
DAEMON_LIBS += -lcrypto
