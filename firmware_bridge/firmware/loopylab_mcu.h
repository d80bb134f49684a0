/* loopylab MCU bridge: protocol core (portable C99, no heap, no floats).
 *
 * Wire format: every frame is COBS-encoded and ends with a 0x00 byte. Decoded frame:
 *   type (1) | seq (1) | body (0..LB_MAX_BODY) | crc16 (2, little-endian)
 * crc16 = CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF) over type, seq and body.
 *
 * Host -> MCU                         MCU -> host
 *   0x01 HELLO     [version]            0x81 HELLO_ACK [version, fw_major, fw_minor, n_joints,
 *   0x02 TARGETS   [n, n x int16 mrad]                 n_sensors, watchdog_ms u16]
 *   0x03 HEARTBEAT []                   0x82 STATE     [flags, n, n x int16 mrad, n x int16 mrad/s,
 *   0x04 ESTOP     []                                   m, m x uint16 sensor]
 *   0x05 CLEAR     []                   0x83 ERROR     [code, detail]
 * Every valid host frame is answered (HELLO by HELLO_ACK, the others by STATE) with the host's seq.
 * Watchdog: after the handshake, no valid frame for watchdog_ms stops motion (targets := present
 * positions, outputs off) and reports ERROR WATCHDOG; the next TARGETS frame moves again.
 * E-stop: ESTOP stops motion and latches; TARGETS are refused (ERROR ESTOP_ACTIVE) until CLEAR.
 */
#ifndef LOOPYLAB_MCU_H
#define LOOPYLAB_MCU_H

#include <stdint.h>

#define LB_PROTOCOL_VERSION 1
#define LB_FW_MAJOR 1
#define LB_FW_MINOR 0
#define LB_MAX_JOINTS 8
#define LB_MAX_SENSORS 8
#define LB_MAX_BODY 64
#define LB_MAX_FRAME (2 + LB_MAX_BODY + 2)
#define LB_MAX_WIRE (LB_MAX_FRAME + LB_MAX_FRAME / 254 + 2)

enum lb_type {
    LB_HELLO = 0x01, LB_TARGETS = 0x02, LB_HEARTBEAT = 0x03, LB_ESTOP = 0x04, LB_CLEAR = 0x05,
    LB_HELLO_ACK = 0x81, LB_STATE = 0x82, LB_ERROR = 0x83
};

enum lb_error {
    LB_ERR_BAD_CRC = 1, LB_ERR_BAD_FRAME = 2, LB_ERR_UNKNOWN_TYPE = 3, LB_ERR_BAD_LENGTH = 4,
    LB_ERR_VERSION = 5, LB_ERR_NOT_READY = 6, LB_ERR_ESTOP_ACTIVE = 7, LB_ERR_WATCHDOG = 8, LB_ERR_RANGE = 9
};

enum lb_flag { LB_F_ESTOP = 1, LB_F_WATCHDOG = 2, LB_F_OUTPUTS_ON = 4, LB_F_READY = 8 };

typedef struct {
    void (*write)(const uint8_t *data, uint16_t n, void *ctx);      /* bytes to the host */
    void (*set_servo)(uint8_t joint, int16_t mrad, uint8_t on, void *ctx);  /* drive one output */
    uint16_t (*read_sensor)(uint8_t sensor, void *ctx);              /* e.g. a 10-bit ADC */
    void *ctx;
} lb_hal;

typedef struct {
    lb_hal hal;
    uint8_t n_joints, n_sensors;
    uint16_t watchdog_ms;
    int16_t speed_mrad_s;                    /* servo slew rate used for the position estimate */
    int16_t min_mrad[LB_MAX_JOINTS], max_mrad[LB_MAX_JOINTS];
    int16_t target[LB_MAX_JOINTS];
    int32_t pos_umrad[LB_MAX_JOINTS];        /* estimated position, micro-radians */
    int16_t vel[LB_MAX_JOINTS];
    uint8_t rx[LB_MAX_WIRE];
    uint16_t rx_len;
    uint8_t rx_overflow;
    uint8_t ready, estop, tripped, outputs_on;
    uint32_t last_rx_ms, last_tick_ms;
    uint32_t frames_ok, frames_bad;
} lb_state;

uint16_t lb_crc16(const uint8_t *data, uint16_t n);
uint16_t lb_cobs_encode(const uint8_t *in, uint16_t n, uint8_t *out);   /* no trailing 0 */
int lb_cobs_decode(const uint8_t *in, uint16_t n, uint8_t *out);         /* -1 if malformed */

void lb_init(lb_state *s, const lb_hal *hal, uint8_t n_joints, uint8_t n_sensors, uint16_t watchdog_ms,
             uint32_t now_ms);
void lb_rx_byte(lb_state *s, uint8_t b, uint32_t now_ms);
void lb_tick(lb_state *s, uint32_t now_ms);

#endif
