/* Every provider adapter compiled into crier, found by its config "type".
 * A new provider is one file in workers/ and one line here. */
#include "adapter.h"

#include <string.h>

const struct cr_provider_ops *const cr_provider_table[] = {
    &cr_sendgrid_ops,
    &cr_twilio_ops,
    &cr_fcm_ops,
    &cr_smtp_ops,
    &cr_gateway_ops,
    &cr_apns_ops,
    &cr_whatsapp_twilio_ops,
    &cr_whatsapp_meta_ops,
    NULL,
};

const struct cr_provider_ops *cr_provider_find(const char *type)
{
    size_t i;

    if (type == NULL)
        return NULL;
    for (i = 0; cr_provider_table[i] != NULL; i++) {
        if (strcmp(cr_provider_table[i]->type, type) == 0)
            return cr_provider_table[i];
    }
    return NULL;
}
