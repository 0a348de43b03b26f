/* c-shared-utility's xlogging.h, the part an application uses to install its logger. */
#ifndef PMT_FAKE_XLOGGING_H
#define PMT_FAKE_XLOGGING_H

typedef enum LOG_CATEGORY_TAG { AZ_LOG_ERROR, AZ_LOG_INFO, AZ_LOG_TRACE } LOG_CATEGORY;
#define LOG_NONE 0x00
#define LOG_LINE 0x01

typedef void (*LOGGER_LOG)(LOG_CATEGORY log_category, const char* file, const char* func, int line,
                           unsigned int options, const char* format, ...);

void xlogging_set_log_function(LOGGER_LOG log_function);
LOGGER_LOG xlogging_get_log_function(void);

#endif
