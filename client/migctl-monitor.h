/* migctl-monitor: 'vfio-migctl monitor', vfio-migd's signals as lines of text or JSON */
#pragma once

#include "migctl-bus.h"

/*
 * Prints every signal vfio-migd sends (VMNew, VMRemoved, DeviceStateChanged,
 * SequenceProgress, PropertiesChanged on its objects) and when it joins or leaves the bus,
 * until SIGINT/SIGTERM or, when --timeout was given, until that time has passed. Says on
 * stderr when it is subscribed. Returns a MIGCTL_EXIT_* code.
 */
int ctl_monitor(Ctl *c);
