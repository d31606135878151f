/*
 * Every compatibility profile, and enabling them (profiles/all.c).  Only the cli includes this;
 * a profile includes profiles/profiles.h.
 */
#ifndef VG_PROFILES_ALL_H
#define VG_PROFILES_ALL_H

#include "profiles/profiles.h"

extern const vg_profile_t vg_profile_openeye;
extern const vg_profile_t vg_profile_phase10;
extern const vg_profile_t vg_profile_visionguard;
extern const vg_profile_t vg_profile_socketio;

/* Enables the profiles --profile names (after the core routes, before the static catch-all).
 * Returns 0 or VG_ECONFIG (an unknown name, a bad profile option). */
int vg_profiles_init(vg_app_t *app, char *err, size_t errlen);
void vg_profiles_dispose(vg_app_t *app);
/* The enabled profiles' /metrics lines. */
void vg_profiles_metrics(vg_app_t *app, vg_buf_t *out);

#endif
