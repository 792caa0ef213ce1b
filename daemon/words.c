/* The resident pages' fixed words in English and Welsh (see words.h). */
#include "words.h"

#include <stddef.h>
#include <string.h>
#include <strings.h>

static const char *const english[CR_WORD__COUNT] = {
    [CR_WORD_TITLE] = "Community alerts",
    [CR_WORD_UNSUB_EMAIL] = "Stop getting community alerts by email?",
    [CR_WORD_UNSUB_SMS] = "Stop getting community alerts by text message?",
    [CR_WORD_UNSUB_PUSH] = "Stop getting community alerts as app notifications?",
    [CR_WORD_UNSUB_BUTTON] = "Unsubscribe",
    [CR_WORD_UNSUBSCRIBED] = "You have unsubscribed: you will not get these messages any more.",
    [CR_WORD_SEND] = "Send",
    [CR_WORD_THANKS] = "Thank you: your answer has been recorded.",
    [CR_WORD_THANKS_AGAIN] = "Thank you: we already have your answer.",
    [CR_WORD_CHOOSE] = "Please choose one of the answers.",
    [CR_WORD_CLOSED] = "This survey has closed.",
    [CR_WORD_NOT_VALID] = "This link is not valid.",
    [CR_WORD_EXPIRED] = "This link has expired.",
    [CR_WORD_BAD_METHOD] = "This page takes GET or POST.",
    [CR_WORD_TRY_AGAIN] = "Sorry, we could not do that just now. Please try again in a minute.",
    [CR_WORD_TRY_AGAIN_ANSWER] =
        "Sorry, we could not record your answer just now. Please try again in a minute.",
    [CR_WORD_TRY_AGAIN_SURVEY] =
        "Sorry, this survey is not available just now. Please try again in a minute.",
    [CR_WORD_CONFIRM_ASK] = "Please confirm that you have seen this message.",
    [CR_WORD_CONFIRM_BUTTON] = "I have seen it",
    [CR_WORD_CONFIRMED] = "Thank you: we know you have seen the message.",
};

static const char *const welsh[CR_WORD__COUNT] = {
    [CR_WORD_TITLE] = "Rhybuddion cymunedol",
    [CR_WORD_UNSUB_EMAIL] = "Peidio â chael rhybuddion cymunedol drwy e-bost?",
    [CR_WORD_UNSUB_SMS] = "Peidio â chael rhybuddion cymunedol drwy neges destun?",
    [CR_WORD_UNSUB_PUSH] = "Peidio â chael rhybuddion cymunedol fel hysbysiadau ap?",
    [CR_WORD_UNSUB_BUTTON] = "Dad-danysgrifio",
    [CR_WORD_UNSUBSCRIBED] =
        "Rydych wedi dad-danysgrifio: ni fyddwch yn cael y negeseuon hyn mwyach.",
    [CR_WORD_SEND] = "Anfon",
    [CR_WORD_THANKS] = "Diolch: mae eich ateb wedi'i gofnodi.",
    [CR_WORD_THANKS_AGAIN] = "Diolch: mae eich ateb gennym yn barod.",
    [CR_WORD_CHOOSE] = "Dewiswch un o'r atebion.",
    [CR_WORD_CLOSED] = "Mae'r arolwg hwn wedi cau.",
    [CR_WORD_NOT_VALID] = "Nid yw'r ddolen hon yn ddilys.",
    [CR_WORD_EXPIRED] = "Mae'r ddolen hon wedi dod i ben.",
    [CR_WORD_BAD_METHOD] = "Mae'r dudalen hon yn derbyn GET neu POST.",
    [CR_WORD_TRY_AGAIN] =
        "Mae'n ddrwg gennym, ni allem wneud hynny ar hyn o bryd. Rhowch gynnig arall arni "
        "ymhen munud.",
    [CR_WORD_TRY_AGAIN_ANSWER] =
        "Mae'n ddrwg gennym, ni allem gofnodi eich ateb ar hyn o bryd. Rhowch gynnig arall "
        "arni ymhen munud.",
    [CR_WORD_TRY_AGAIN_SURVEY] =
        "Mae'n ddrwg gennym, nid yw'r arolwg hwn ar gael ar hyn o bryd. Rhowch gynnig arall "
        "arni ymhen munud.",
    [CR_WORD_CONFIRM_ASK] = "Cadarnhewch eich bod wedi gweld y neges hon.",
    [CR_WORD_CONFIRM_BUTTON] = "Rydw i wedi'i gweld",
    [CR_WORD_CONFIRMED] = "Diolch: rydym yn gwybod eich bod wedi gweld y neges.",
};

const char *cr_words_lang(const char *lang)
{
    if (lang != NULL && strncasecmp(lang, "cy", 2) == 0 && (lang[2] == '\0' || lang[2] == '-'))
        return "cy";
    return "en";
}

const char *cr_word(const char *wl, enum cr_word w)
{
    const char *const *table = (wl != NULL && strcmp(wl, "cy") == 0) ? welsh : english;

    if ((int)w < 0 || w >= CR_WORD__COUNT)
        return "";
    return table[w] != NULL ? table[w] : english[w];
}
