/* The MCU bridge firmware built for the host: the protocol core behind a pseudo-terminal, so the
 * Python side (and tests) talk to the very code that runs on the board. Prints the pty path, then
 * serves until SIGTERM/SIGINT.
 *   ./loopylab_mcu_host [--joints N] [--sensors M] [--watchdog MS] [--link PATH]
 */
#define _XOPEN_SOURCE 600
#define _DEFAULT_SOURCE
#include "loopylab_mcu.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t running = 1;
static int master_fd = -1;

static void on_signal(int sig) { (void)sig; running = 0; }

static uint32_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint32_t)(ts.tv_sec * 1000u + ts.tv_nsec / 1000000u);
}

static void hal_write(const uint8_t *data, uint16_t n, void *ctx) {
    (void)ctx;
    while (n) {
        ssize_t w = write(master_fd, data, n);
        if (w < 0) { if (errno == EINTR || errno == EAGAIN) continue; return; }
        data += w;
        n = (uint16_t)(n - w);
    }
}

static void hal_set_servo(uint8_t joint, int16_t mrad, uint8_t on, void *ctx) { (void)joint; (void)mrad; (void)on; (void)ctx; }

static lb_state state;

/* A potentiometer on each joint's linkage: 10-bit reading that follows the joint. */
static uint16_t hal_read_sensor(uint8_t i, void *ctx) {
    (void)ctx;
    int32_t j = state.n_joints ? i % state.n_joints : 0;
    int32_t v = 512 + (int32_t)(state.pos_umrad[j] / 1000) * 512 / 1571 + i;
    return (uint16_t)(v < 0 ? 0 : (v > 1023 ? 1023 : v));
}

int main(int argc, char **argv) {
    int joints = 4, sensors = 2, watchdog = 200;
    const char *link = NULL;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--joints")) joints = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--sensors")) sensors = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--watchdog")) watchdog = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--link")) link = argv[i + 1];
        else { fprintf(stderr, "unknown option %s\n", argv[i]); return 2; }
    }
    master_fd = posix_openpt(O_RDWR | O_NOCTTY);
    if (master_fd < 0 || grantpt(master_fd) || unlockpt(master_fd)) { perror("pty"); return 1; }
    const char *name = ptsname(master_fd);
    int slave = open(name, O_RDWR | O_NOCTTY);   /* held open: no hang-up while the host reconnects */
    struct termios t;
    tcgetattr(slave, &t);
    cfmakeraw(&t);
    tcsetattr(slave, TCSANOW, &t);
    if (link) {
        unlink(link);
        if (symlink(name, link)) { perror("symlink"); return 1; }
    }
    printf("%s\n", link ? link : name);
    fflush(stdout);
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);

    lb_hal hal = {hal_write, hal_set_servo, hal_read_sensor, NULL};
    lb_init(&state, &hal, (uint8_t)joints, (uint8_t)sensors, (uint16_t)watchdog, now_ms());
    struct pollfd pfd = {master_fd, POLLIN, 0};
    uint8_t buf[256];
    while (running) {
        int r = poll(&pfd, 1, 2);
        if (r > 0 && (pfd.revents & POLLIN)) {
            ssize_t n = read(master_fd, buf, sizeof buf);
            uint32_t t_ms = now_ms();
            for (ssize_t i = 0; i < n; i++) lb_rx_byte(&state, buf[i], t_ms);
        }
        lb_tick(&state, now_ms());
    }
    if (link) unlink(link);
    close(slave);
    close(master_fd);
    return 0;
}
