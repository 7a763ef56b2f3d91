/* bus-vm: org.vfiomig.Coordinator1.VM at /org/vfiomig/Coordinator1/vm/<name> */
#pragma once

#include "daemon.h"

/* The fallback vtable and node enumerator for every registered VM. */
int bus_vm_register(Daemon *d);

/* Signals for what a VM does on its own (a deferred rollback, a hung step's return). */
void bus_vm_observe(Daemon *d, Vm *vm);
