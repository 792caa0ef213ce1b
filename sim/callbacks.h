/* Outbound provider callbacks of crier-sim: the HTTP requests real providers
 * make to their customers (Twilio status callbacks and inbound SMS, SendGrid's
 * signed event webhook), sent on the sim's loop, retried, and recorded. */
#ifndef SIM_CALLBACKS_H
#define SIM_CALLBACKS_H

#include "sim.h"

/* Creates sim->callbacks: the outbound HTTP client on sim->loop and, when
 * --sendgrid-webhook-key is given, the EC P-256 signing key. Returns 0, or
 * CR_ECONFIG (unreadable or wrong key; logged) or CR_ENOMEM; on failure
 * sim->callbacks stays NULL and nothing needs closing. */
int sim_callbacks_init(struct sim *sim);

/* Abandons every callback not yet delivered (a waiting /_sim/inbound request is
 * answered 503), closes the client and timers, and frees sim->callbacks from
 * the loop once its handles are closed: the caller runs the loop afterwards.
 * Does nothing when sim->callbacks is NULL. */
void sim_callbacks_close(struct sim *sim);

/* Whether crier-sim can queue every status callback of the Twilio message
 * request req asks to send (none are made without StatusCallback; whatsapp:
 * the message goes to a whatsapp: number, which also gets "read"). The
 * handlers refuse a message that does not fit with Twilio's 429 (20429)
 * rather than accept it and drop its callbacks, which would leave the
 * customer's record of it wrong; the sender retries it. */
int sim_callbacks_twilio_room(struct sim *sim, const struct sim_request *req, int whatsapp);

/* The same for a Meta Cloud API message (sent, delivered and read), when the
 * Meta webhook is configured. */
int sim_callbacks_meta_room(struct sim *sim);

/* Called by the router after the Twilio handler answered: a 201 for a request
 * with StatusCallback schedules the status callbacks ("sent", then "delivered"
 * or "undelivered"). req and res are only read. */
void sim_callbacks_after_twilio(struct sim *sim, const struct sim_request *req,
                                const struct sim_response *res);

/* Called by the Meta WhatsApp handler after it accepted message wamid to
 * number to (digits) with crier's ref (may be NULL): with --meta-webhook-url
 * and --meta-app-secret, queues the "sent", "delivered" and "read" statuses,
 * each a webhook POST signed with X-Hub-Signature-256 as Meta signs them. */
void sim_callbacks_after_meta(struct sim *sim, const char *wamid, const char *to,
                              const char *ref);

/* Called by the router after the SendGrid handler answered: a 202 queues the
 * "processed" and then "delivered"/"bounce" events of every "to" address for
 * the event webhook, when it is configured. */
void sim_callbacks_after_sendgrid(struct sim *sim, const struct sim_request *req,
                                  const struct sim_response *res);

/* Called by the FCM and APNs handlers after they accepted a push for token
 * carrying crier_ref ref: when --generic-webhook-url is set, draws whether it
 * is delivered (sim_provider_delivers) and, if so, schedules the app's signed
 * acknowledgement {"ref","status":"delivered","event_id"} to that URL after
 * --callback-delay-ms. Returns 1 (an acknowledgement is on its way), 0 (no
 * receipt will come: not delivered, or it could not be queued) or -1 (no
 * generic webhook configured, or no ref: nothing drawn). Strings are borrowed. */
int sim_callbacks_after_push(struct sim *sim, enum sim_endpoint ep, const char *token,
                             const char *ref);

/* Answers GET /_sim/callbacks and POST /_sim/inbound. Returns 1 when req was
 * one of those (res is filled or deferred), 0 to let the router go on. */
int sim_callbacks_control(struct sim *sim, const struct sim_request *req,
                          struct sim_response *res);

#endif
