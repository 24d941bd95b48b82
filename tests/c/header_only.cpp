// The header compiles on its own, as C++.
#include "modeconn.h"

int modeconn_header_only_cpp();
int modeconn_header_only_cpp() { return static_cast<int>(MODECONN_STATUS_OK) + MODECONN_ABI_VERSION; }
