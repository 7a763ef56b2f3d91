/* bus-vm: org.vfiomig.Coordinator1.VM at /org/vfiomig/Coordinator1/vm/<name> */
#pragma once

#include "daemon.h"

/* The fallback vtable and node enumerator for every registered VM. */
int bus_vm_register(Daemon *d);

/* Signals for what a VM does on its own (a deferred rollback, a hung step's return). */
void bus_vm_observe(Daemon *d, Vm *vm);
/* The signals of a sequence's event (ManagerEvents.sequence_event, model/manager.h):
 * DeviceStateChanged, SequenceProgress of op, Blockers when a step hung. */
void bus_vm_emit_sequence_event(Daemon *d, Vm *vm, enum plan_op op, const SeqEvent *ev);
/* After the policy changed: PropertiesChanged for every VM's settings (P2PMode, Strategy,
 * PhaseDeadlineMs, Parallelism) and invalidation of Migratable and Blockers. */
void bus_vm_emit_policy_changed(Daemon *d);
