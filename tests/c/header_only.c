/* The header compiles on its own, as C. */
#include "modeconn.h"

int modeconn_header_only_c(void);
int modeconn_header_only_c(void) { return MODECONN_STATUS_OK + MODECONN_ABI_VERSION; }
