/* make check-freebsd: gcc's <stddef.h> includes FreeBSD's <sys/_types.h>
** when __FreeBSD__ is defined; glibc's types serve here, nothing more is
** needed from it. */
