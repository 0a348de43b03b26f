/* placeholder */
#include "harness.h"
