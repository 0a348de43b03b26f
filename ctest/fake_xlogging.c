/* Stands for c-shared-utility's xlogging.c in the logging tests: the pair of functions an SDK
 * application's logger goes through, with the same names and shapes (LOG_CATEGORY, LOGGER_LOG).
 * Built as its own static library and linked after prov_mqtt_transport, as the SDK's
 * aziotsharedutil archive is. */
#include "fake_xlogging.h"

static LOGGER_LOG current;

void xlogging_set_log_function(LOGGER_LOG log_function) { current = log_function; }

LOGGER_LOG xlogging_get_log_function(void) { return current; }
