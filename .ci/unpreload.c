/*
** For `make sanitize`: preloaded after libasan.so into each lua5.4, it takes
** LD_PRELOAD out of the process's environment once the sanitizer runtime is
** in, so the programs the specs start (curl, python3, sh, ...) run without
** ASan (curl deadlocked under it). Child lua5.4 processes get it back from
** the lua5.4 wrapper that `make sanitize` puts first in PATH.
*/
#include <stdlib.h>

__attribute__((constructor)) static void unpreload(void) {
  unsetenv("LD_PRELOAD");
}
