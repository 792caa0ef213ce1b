/* SMS length as carriers bill it: GSM 03.38 7-bit (160 per message, 153 per
 * part when concatenated; extension-table characters take two septets) or
 * UCS-2 (70, 67 per part; characters outside the BMP take two units). */
#ifndef CR_SMS_H
#define CR_SMS_H

#include <stddef.h>

enum cr_sms_encoding { CR_SMS_GSM7, CR_SMS_UCS2 };

struct cr_sms_info {
    enum cr_sms_encoding encoding;
    size_t units;    /* septets (GSM-7) or UTF-16 code units (UCS-2) */
    size_t segments; /* 0 for an empty text */
};

/* Measures a UTF-8 text. Returns 0, or CR_EINVAL for invalid UTF-8. */
int cr_sms_measure(const char *utf8, size_t len, struct cr_sms_info *out);

#endif
