#include <string.h>

#include "google/rpc/error_details.pb-c.h"
#include "google/rpc/status.pb-c.h"
#include "ld_status.h"
#include "ld_test.h"

LD_TEST(feast_json_matches_python_json_dumps)
{
    ld_status st;
    ld_status_set(&st, GRPC_STATUS_NOT_FOUND, "FeatureViewNotFoundException",
                  "Feature view %s does not exist in project %s", "x", "p");
    ld_buf b = LD_BUF_INIT;
    ld_status_feast_json(&st, &b);
    LD_CHECK_STR(b.data, "{\"module\": \"feast.errors\", \"class\": "
                         "\"FeatureViewNotFoundException\", \"message\": \"Feature view x does "
                         "not exist in project p\"}");
    ld_buf_free(&b);
}

LD_TEST(defaults_and_module)
{
    ld_status st = LD_STATUS_INIT;
    LD_CHECK(ld_status_ok(&st));
    LD_CHECK_INT(ld_status_set(&st, GRPC_STATUS_INVALID_ARGUMENT, NULL, "bad \"q\" \xc3\xa9"), -1);
    LD_CHECK_STR(ld_status_class(&st), "FeastError");
    LD_CHECK_STR(ld_status_module(&st), "feast.errors");
    ld_buf b = LD_BUF_INIT;
    ld_status_feast_json(&st, &b);
    LD_CHECK_STR(b.data, "{\"module\": \"feast.errors\", \"class\": \"FeastError\", "
                         "\"message\": \"bad \\\"q\\\" \\u00e9\"}");
    ld_buf_free(&b);
    ld_status_set_module(&st, GRPC_STATUS_INTERNAL, "feast.permissions", "X", "m");
    LD_CHECK_STR(ld_status_module(&st), "feast.permissions");
    ld_status_prefix(&st, "ctx %d", 1);
    LD_CHECK_STR(st.msg, "ctx 1: m");
    LD_CHECK_STR(ld_status_code_name(GRPC_STATUS_RESOURCE_EXHAUSTED), "RESOURCE_EXHAUSTED");
    LD_CHECK_STR(ld_status_code_name((grpc_status_code)99), "UNKNOWN");
}

LD_TEST(details_bin_is_google_rpc_status)
{
    ld_status st;
    ld_status_set(&st, GRPC_STATUS_PERMISSION_DENIED, "FeastPermissionError", "no");
    ld_buf json = LD_BUF_INIT, bin = LD_BUF_INIT;
    ld_status_feast_json(&st, &json);
    ld_status_details_bin(&st, json.data, json.len, &bin);
    Google__Rpc__Status *s = google__rpc__status__unpack(NULL, bin.len, (const uint8_t *)bin.data);
    LD_CHECK(s != NULL);
    if (s) {
        LD_CHECK_INT(s->code, GRPC_STATUS_PERMISSION_DENIED);
        LD_CHECK_STR(s->message, json.data);
        LD_CHECK_INT(s->n_details, 1);
        LD_CHECK_STR(s->details[0]->type_url, "type.googleapis.com/google.rpc.ErrorInfo");
        Google__Rpc__ErrorInfo *ei = google__rpc__error_info__unpack(NULL, s->details[0]->value.len,
                                                                     s->details[0]->value.data);
        LD_CHECK(ei != NULL);
        if (ei) {
            LD_CHECK_STR(ei->reason, "FeastPermissionError");
            LD_CHECK_STR(ei->domain, "feast.errors");
            google__rpc__error_info__free_unpacked(ei, NULL);
        }
        google__rpc__status__free_unpacked(s, NULL);
    }
    ld_buf_free(&json);
    ld_buf_free(&bin);
}

LD_TEST_MAIN
