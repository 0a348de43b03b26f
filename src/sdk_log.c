/* The link to the Azure IoT SDK's logger, without a link dependency on c-shared-utility.
 *
 * xlogging_get_log_function is referenced weakly: when the process links c-shared-utility (as
 * every SDK application does) the reference resolves to its definition, and every line of ours
 * goes to the function the application installed with xlogging_set_log_function (syslog, a
 * UART, the SDK's console logger ...); otherwise the reference is NULL and src/log.rs prints
 * errors to stderr itself. Rust has no stable weak linkage, hence this file (built by build.rs).
 * In the static library, a weak reference does not pull xlogging.o out of c-shared-utility's
 * archive by itself: the SDK's own modules (and any application that sets a logger) do. */
#include <stddef.h>

/* c-shared-utility's xlogging.h, same values and shapes: LOG_CATEGORY and LOGGER_LOG
 * (XLOGGING_LOGGER_LOG in newer headers). */
typedef enum PMT_LOG_CATEGORY { PMT_AZ_LOG_ERROR = 0, PMT_AZ_LOG_INFO = 1, PMT_AZ_LOG_TRACE = 2 } PMT_LOG_CATEGORY;
typedef void (*pmt_sdk_logger)(PMT_LOG_CATEGORY category, const char* file, const char* func, int line,
                               unsigned int options, const char* format, ...);

extern pmt_sdk_logger xlogging_get_log_function(void) __attribute__((weak));

#define PMT_LOG_LINE 0x01u

int prov_mqtt_transport_sdk_log(int category, const char* file, const char* func, int line, const char* text);

int prov_mqtt_transport_sdk_log(int category, const char* file, const char* func, int line, const char* text) {
    if (xlogging_get_log_function == NULL) return 0;
    pmt_sdk_logger log = xlogging_get_log_function();
    if (log == NULL) return 0;
    /* "%s": a '%' in our text is printed, never interpreted. */
    log((PMT_LOG_CATEGORY)category, file, func, line, PMT_LOG_LINE, "%s", text);
    return 1;
}
