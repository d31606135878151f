/*
 * The table of compatibility profiles, and enabling the ones --profile names (like nginx's list
 * of modules: the one file that knows every profile).
 */
#include "profiles/all.h"

#include <stdio.h>
#include <string.h>

#include "util/alloc.h"
#include "util/error.h"
#include "util/log.h"

static const vg_profile_t *const all_profiles[] = {
    &vg_profile_openeye,
    &vg_profile_phase10,
    &vg_profile_visionguard,
    &vg_profile_socketio,
};
#define NUM_PROFILES (sizeof(all_profiles) / sizeof(all_profiles[0]))

static int wanted(const vg_patterns_t *names, const char *name)
{
    for (size_t i = 0; i < names->count; i++)
        if (strcmp(names->items[i], name) == 0 || strcmp(names->items[i], "all") == 0)
            return 1;
    return 0;
}

static int check_names(const vg_patterns_t *names, char *err, size_t errlen)
{
    for (size_t i = 0; i < names->count; i++) {
        int known = strcmp(names->items[i], "all") == 0;
        for (size_t k = 0; k < NUM_PROFILES && !known; k++)
            known = strcmp(names->items[i], all_profiles[k]->name) == 0;
        if (!known) {
            snprintf(err, errlen,
                     "invalid value '%s' for --profile: expected openeye, phase10, visionguard, "
                     "socketio or all",
                     names->items[i]);
            return VG_ECONFIG;
        }
    }
    return 0;
}

int vg_profiles_init(vg_app_t *app, char *err, size_t errlen)
{
    vg_patterns_t names;
    vg_patterns_parse(&names, app->cfg->profiles);
    int rc = check_names(&names, err, errlen);
    app->profile_state = vg_calloc(NUM_PROFILES, sizeof(void *));
    for (size_t i = 0; i < NUM_PROFILES && rc == 0; i++) {
        if (!wanted(&names, all_profiles[i]->name))
            continue;
        rc = all_profiles[i]->init(app, &app->profile_state[i], err, errlen);
        if (rc == 0)
            vg_notice("profile %s enabled", all_profiles[i]->name);
    }
    vg_patterns_dispose(&names);
    return rc;
}

void vg_profiles_dispose(vg_app_t *app)
{
    for (size_t i = 0; app->profile_state != NULL && i < NUM_PROFILES; i++)
        if (app->profile_state[i] != NULL && all_profiles[i]->dispose != NULL)
            all_profiles[i]->dispose(app->profile_state[i]);
    vg_free(app->profile_state);
    app->profile_state = NULL;
}

void vg_profiles_metrics(vg_app_t *app, vg_buf_t *out)
{
    for (size_t i = 0; app->profile_state != NULL && i < NUM_PROFILES; i++)
        if (app->profile_state[i] != NULL && all_profiles[i]->metrics != NULL)
            all_profiles[i]->metrics(app->profile_state[i], out);
}
