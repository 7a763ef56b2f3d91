/* bus-vm: org.vfiomig.Coordinator1.VM at /org/vfiomig/Coordinator1/vm/<name> */
#pragma once

#include "daemon.h"

/* The fallback vtable and node enumerator for every registered VM. */
int bus_vm_register(Daemon *d);

/* After the policy changed: PropertiesChanged for every VM's settings (P2PMode, Strategy,
 * PhaseDeadlineMs, Parallelism) and invalidation of Migratable and Blockers. */
void bus_vm_emit_policy_changed(Daemon *d);
