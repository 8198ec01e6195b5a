/* make check-macos / check-freebsd: <sys/sendfile.h> is Linux's; the BSDs
** declare their own sendfile in <sys/socket.h> */
#error "<sys/sendfile.h> does not exist on this surface (macOS, FreeBSD)"
