/* The resident pages' languages: the fixed words built in (Welsh, English,
 * English for any other language), and the survey read from the job document
 * in the language of the resident's message. */
#include "cr_error.h"
#include "replies.h"
#include "test.h"
#include "words.h"

#include <string.h>

TEST(words_languages_built_in)
{
    size_t w;

    ASSERT_STR_EQ(cr_words_lang("cy"), "cy");
    ASSERT_STR_EQ(cr_words_lang("CY-gb"), "cy");
    ASSERT_STR_EQ(cr_words_lang("en"), "en");
    ASSERT_STR_EQ(cr_words_lang("pl"), "en"); /* not built in: English fixed words */
    ASSERT_STR_EQ(cr_words_lang("cym"), "en");
    ASSERT_STR_EQ(cr_words_lang(""), "en");
    ASSERT_STR_EQ(cr_words_lang(NULL), "en");
    ASSERT_STR_EQ(cr_word("cy", CR_WORD_UNSUB_BUTTON), "Dad-danysgrifio");
    ASSERT_STR_EQ(cr_word("en", CR_WORD_UNSUB_BUTTON), "Unsubscribe");
    ASSERT_STR_EQ(cr_word("cy", CR_WORD_SEND), "Anfon");
    ASSERT(strncmp(cr_word("cy", CR_WORD_UNSUBSCRIBED), "Rydych wedi dad-danysgrifio", 27) == 0);
    ASSERT(strncmp(cr_word("cy", CR_WORD_THANKS), "Diolch", 6) == 0);
    ASSERT_STR_EQ(cr_word("pl", CR_WORD_SEND), "Send");
    /* every word in both languages, and the two differ */
    for (w = 0; w < CR_WORD__COUNT; w++) {
        const char *cy = cr_word("cy", (enum cr_word)w);
        const char *en = cr_word("en", (enum cr_word)w);

        ASSERT(cy != NULL && en != NULL && cy[0] != '\0' && en[0] != '\0');
        ASSERT(strcmp(cy, en) != 0);
    }
}

TEST(replies_survey_in_the_message_language)
{
    static const char doc[] =
        "{\"id\":\"s1\",\"audience\":{\"segments\":[\"area:A\"]},"
        "\"message\":{\"lang\":\"en\",\"sms\":\"x\",\"translations\":{"
        "\"cy\":{\"sms\":\"y\",\"survey\":{\"question\":\"Ydych chi'n teimlo'n ddiogel?\","
        "\"options\":[\"Ydw\",\"Nac ydw\"]}},\"pl\":{\"sms\":\"z\"}}},"
        "\"survey\":{\"question\":\"Safe?\",\"options\":[\"Yes\",\"No\"]}}";
    struct cr_survey sv;

    ASSERT_INT_EQ(cr_survey_from_doc_lang(doc, strlen(doc), "cy", &sv), 0);
    ASSERT_STR_EQ(sv.question, "Ydych chi'n teimlo'n ddiogel?");
    ASSERT_STR_EQ(sv.options[1], "Nac ydw");
    ASSERT_STR_EQ(sv.lang, "cy");
    ASSERT_INT_EQ(sv.nsegments, 1);
    cr_survey_release(&sv);
    ASSERT_INT_EQ(cr_survey_from_doc_lang(doc, strlen(doc), "cy-GB", &sv), 0);
    ASSERT_STR_EQ(sv.lang, "cy");
    cr_survey_release(&sv);
    /* pl has no survey, an old link has no language: the default's, whole */
    ASSERT_INT_EQ(cr_survey_from_doc_lang(doc, strlen(doc), "pl", &sv), 0);
    ASSERT_STR_EQ(sv.question, "Safe?");
    ASSERT_STR_EQ(sv.lang, "en");
    cr_survey_release(&sv);
    ASSERT_INT_EQ(cr_survey_from_doc_lang(doc, strlen(doc), "", &sv), 0);
    ASSERT_STR_EQ(sv.options[0], "Yes");
    cr_survey_release(&sv);
    ASSERT_INT_EQ(cr_survey_from_doc(doc, strlen(doc), &sv), 0);
    ASSERT_STR_EQ(sv.question, "Safe?");
    cr_survey_release(&sv);
}

TEST(replies_sms_answer_in_any_language_of_the_job)
{
    static const char doc[] =
        "{\"message\":{\"sms\":\"x\",\"translations\":{"
        "\"pl\":{\"sms\":\"z\"},"
        "\"cy\":{\"sms\":\"y\",\"survey\":{\"question\":\"Q\","
        "\"options\":[\"Ydw\",\"Nac ydw\",\"Ddim yn si\u0175r\"]}}}},"
        "\"survey\":{\"question\":\"Safe?\",\"options\":[\"Yes\",\"No\",\"Not sure\"]}}";

    ASSERT_INT_EQ(cr_survey_match_doc(doc, strlen(doc), "no"), 2);
    ASSERT_INT_EQ(cr_survey_match_doc(doc, strlen(doc), " nac YDW "), 2);
    ASSERT_INT_EQ(cr_survey_match_doc(doc, strlen(doc), "Ddim yn si\xc5\xb5r"), 3);
    ASSERT_INT_EQ(cr_survey_match_doc(doc, strlen(doc), "3"), 3);
    ASSERT_INT_EQ(cr_survey_match_doc(doc, strlen(doc), "efallai"), 0);
    ASSERT_INT_EQ(cr_survey_match_doc("{\"id\":1}", 8, "yes"), 0);
    ASSERT_INT_EQ(cr_survey_match_doc("nope", 4, "yes"), 0);
}
