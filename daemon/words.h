/* The fixed words of the resident pages (/u/ and /s/: headings, buttons,
 * confirmations) in the languages built in, English and Welsh. A page is
 * shown in the language of the message its link came in; for a language not
 * built in the fixed words are English (the job's content stays in its
 * translation). */
#ifndef CR_WORDS_H
#define CR_WORDS_H

enum cr_word {
    CR_WORD_TITLE,          /* the page title */
    CR_WORD_UNSUB_EMAIL,    /* the unsubscribe question, per channel */
    CR_WORD_UNSUB_SMS,
    CR_WORD_UNSUB_PUSH,
    CR_WORD_UNSUB_BUTTON,
    CR_WORD_UNSUBSCRIBED,
    CR_WORD_SEND,           /* the survey's submit button */
    CR_WORD_THANKS,         /* answer recorded */
    CR_WORD_THANKS_AGAIN,   /* answered before */
    CR_WORD_CHOOSE,         /* no option chosen */
    CR_WORD_CLOSED,         /* no such survey any more */
    CR_WORD_NOT_VALID,
    CR_WORD_EXPIRED,
    CR_WORD_BAD_METHOD,     /* neither GET nor POST */
    CR_WORD_TRY_AGAIN,      /* Redis unavailable */
    CR_WORD_TRY_AGAIN_ANSWER,
    CR_WORD_TRY_AGAIN_SURVEY,
    CR_WORD_CONFIRM_ASK,    /* the confirmation page's question */
    CR_WORD_CONFIRM_BUTTON,
    CR_WORD_CONFIRMED,      /* confirmation recorded (now or before) */
    CR_WORD__COUNT
};

/* The built-in language for a language tag: "cy" for "cy" and "cy-*" (any
 * case), else "en" (also for NULL and ""). A static string. */
const char *cr_words_lang(const char *lang);

/* The fixed word w in built-in language wl (as cr_words_lang returns; any
 * other value gives English). A static string, UTF-8, not HTML-escaped. */
const char *cr_word(const char *wl, enum cr_word w);

#endif
