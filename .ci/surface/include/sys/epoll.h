/* make check-macos / check-freebsd: epoll is Linux's */
#error "<sys/epoll.h> does not exist on this surface (macOS, FreeBSD)"
