/* make check-macos / check-freebsd: struct xucred and XUCRED_VERSION come
** from the pre-included surface header (.ci/surface/<os>.h), as each
** system's own <sys/ucred.h> has them. */
