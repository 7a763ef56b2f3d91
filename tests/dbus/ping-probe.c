/* ping-probe: how long the daemon's event loop takes to answer org.freedesktop.DBus.Peer.Ping
 *
 * The D-Bus tests' measure of "the loop never blocks" (issue 12): while a test drives a load,
 * this sends one Ping every INTERVAL ms to the bus name on the system bus
 * (DBUS_SYSTEM_BUS_ADDRESS) until it is sent SIGTERM or has sent COUNT, and prints one line
 * per ping, "SENT_US RTT_US" (CLOCK_MONOTONIC microseconds at send, round trip), or
 * "SENT_US error NAME" when the call fails. Each Ping waits at most TIMEOUT ms. sd-bus
 * answers Peer.Ping itself, from the loop's dispatch, so the round trip is the time the loop
 * takes to come round to the message (plus the bus's own hop).
 *
 * Usage: ping-probe [--count N] [--interval-ms MS] [--timeout-ms MS] [NAME]
 * Exit: 0, or 1 when the bus cannot be reached.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-bus.h>
#include <time.h>

static volatile sig_atomic_t stop;

static void on_term(int sig)
{
        (void)sig;
        stop = 1;
}

static unsigned long long now_us(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (unsigned long long)ts.tv_sec * 1000000ull + (unsigned long long)ts.tv_nsec / 1000;
}

int main(int argc, char **argv)
{
        const char *name = "org.vfiomig.Coordinator1";
        unsigned long count = 0, interval_ms = 2, timeout_ms = 60000;
        sd_bus *bus = NULL;
        int r;

        for (int i = 1; i < argc; i++) {
                if (strcmp(argv[i], "--count") == 0 && i + 1 < argc)
                        count = strtoul(argv[++i], NULL, 10);
                else if (strcmp(argv[i], "--interval-ms") == 0 && i + 1 < argc)
                        interval_ms = strtoul(argv[++i], NULL, 10);
                else if (strcmp(argv[i], "--timeout-ms") == 0 && i + 1 < argc)
                        timeout_ms = strtoul(argv[++i], NULL, 10);
                else
                        name = argv[i];
        }
        signal(SIGTERM, on_term);
        signal(SIGINT, on_term);
        setvbuf(stdout, NULL, _IOLBF, 0);

        r = sd_bus_open_system(&bus);
        if (r < 0) {
                fprintf(stderr, "ping-probe: cannot connect to the system bus: %s\n", strerror(-r));
                return 1;
        }
        (void)sd_bus_set_method_call_timeout(bus, (uint64_t)timeout_ms * 1000u);
        printf("ready\n");
        for (unsigned long n = 0; !stop && (count == 0 || n < count); n++) {
                sd_bus_error e = SD_BUS_ERROR_NULL;
                sd_bus_message *reply = NULL;
                unsigned long long sent = now_us();
                struct timespec pause = {.tv_sec = (time_t)(interval_ms / 1000),
                                         .tv_nsec = (long)(interval_ms % 1000) * 1000000L};

                r = sd_bus_call_method(bus, name, "/", "org.freedesktop.DBus.Peer", "Ping", &e,
                                       &reply, NULL);
                if (r == -EINTR && stop)
                        break;
                if (r < 0)
                        printf("%llu error %s\n", sent, e.name ? e.name : strerror(-r));
                else
                        printf("%llu %llu\n", sent, now_us() - sent);
                sd_bus_message_unref(reply);
                sd_bus_error_free(&e);
                nanosleep(&pause, NULL);
        }
        sd_bus_flush_close_unref(bus);
        return 0;
}
