/* fuzz-policy: libFuzzer target for the policy parser and its error locator
 *
 * Every input either parses into a policy that evaluates without fault, or fails with an
 * error that names the file and a position; never a crash, a leak or undefined behaviour.
 */
#include <glib.h>
#include <stdint.h>
#include <string.h>

#include "core/policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        g_autofree char *text = g_strndup((const char *)data, size);
        const char *names[] = {"fuzz.json"};
        const char *texts[] = {text};
        Policy *p = NULL;
        g_autofree char *err = NULL;
        static const PolicyDevice devs[] = {
                {.name = "nic0", .driver = "mlx5_vfio_pci", .vendor_id = 0x15b3,
                 .device_id = 0x101e, .flags = 7, .iommu_group = "1"},
                {.name = "acc0", .driver = "hisi_acc_vfio_pci", .vendor_id = 0x19e5,
                 .device_id = 0xa251, .flags = 5, .iommu_group = "2"},
        };

        if (policy_parse(names, texts, 1, &p, &err) < 0) {
                if (!err || strncmp(err, "fuzz.json:", 10) != 0)
                        __builtin_trap();
                return 0;
        }
        for (size_t n = 1; n <= G_N_ELEMENTS(devs); n++) {
                PolicyDecision *d = NULL;
                if (policy_evaluate(p, NULL, NULL, "web-1", devs, n, &d) < 0 || !d)
                        __builtin_trap();
                policy_decision_free(d);
        }
        policy_free(p);
        return 0;
}
