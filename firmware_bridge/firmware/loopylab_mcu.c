/* loopylab MCU bridge protocol core: see loopylab_mcu.h for the wire format. */
#include "loopylab_mcu.h"

#include <string.h>

uint16_t lb_crc16(const uint8_t *data, uint16_t n) {
    uint16_t crc = 0xFFFF;
    for (uint16_t i = 0; i < n; i++) {
        crc ^= (uint16_t)data[i] << 8;
        for (uint8_t b = 0; b < 8; b++)
            crc = (crc & 0x8000) ? (uint16_t)((crc << 1) ^ 0x1021) : (uint16_t)(crc << 1);
    }
    return crc;
}

uint16_t lb_cobs_encode(const uint8_t *in, uint16_t n, uint8_t *out) {
    uint16_t code_at = 0, o = 1;
    uint8_t code = 1;
    for (uint16_t i = 0; i < n; i++) {
        if (in[i] == 0) {
            out[code_at] = code;
            code_at = o++;
            code = 1;
        } else {
            out[o++] = in[i];
            if (++code == 0xFF) {
                out[code_at] = code;
                code_at = o++;
                code = 1;
            }
        }
    }
    out[code_at] = code;
    return o;
}

int lb_cobs_decode(const uint8_t *in, uint16_t n, uint8_t *out) {
    uint16_t i = 0, o = 0;
    while (i < n) {
        uint8_t code = in[i++];
        if (code == 0) return -1;
        for (uint8_t k = 1; k < code; k++) {
            if (i >= n || in[i] == 0) return -1;
            out[o++] = in[i++];
        }
        if (code != 0xFF && i < n) out[o++] = 0;
    }
    return (int)o;
}

static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v & 0xFF); p[1] = (uint8_t)(v >> 8); }
static int16_t get16(const uint8_t *p) { return (int16_t)(uint16_t)(p[0] | (p[1] << 8)); }

static void send_frame(lb_state *s, uint8_t type, uint8_t seq, const uint8_t *body, uint8_t n) {
    uint8_t raw[LB_MAX_FRAME], wire[LB_MAX_WIRE];
    raw[0] = type;
    raw[1] = seq;
    if (n) memcpy(raw + 2, body, n);
    put16(raw + 2 + n, lb_crc16(raw, (uint16_t)(2 + n)));
    uint16_t w = lb_cobs_encode(raw, (uint16_t)(4 + n), wire);
    wire[w++] = 0;
    s->hal.write(wire, w, s->hal.ctx);
}

static void send_error(lb_state *s, uint8_t seq, uint8_t code, uint8_t detail) {
    uint8_t body[2] = {code, detail};
    send_frame(s, LB_ERROR, seq, body, 2);
}

static int16_t present_mrad(const lb_state *s, uint8_t j) { return (int16_t)(s->pos_umrad[j] / 1000); }

static void stop_motion(lb_state *s) {
    for (uint8_t j = 0; j < s->n_joints; j++) {
        s->target[j] = present_mrad(s, j);
        s->vel[j] = 0;
        s->hal.set_servo(j, s->target[j], 0, s->hal.ctx);
    }
    s->outputs_on = 0;
}

static uint8_t flags(const lb_state *s) {
    return (uint8_t)((s->estop ? LB_F_ESTOP : 0) | (s->tripped ? LB_F_WATCHDOG : 0) |
                     (s->outputs_on ? LB_F_OUTPUTS_ON : 0) | (s->ready ? LB_F_READY : 0));
}

static void send_state(lb_state *s, uint8_t seq) {
    uint8_t body[LB_MAX_BODY];
    uint8_t n = s->n_joints, m = s->n_sensors, k = 0;
    body[k++] = flags(s);
    body[k++] = n;
    for (uint8_t j = 0; j < n; j++, k += 2) put16(body + k, (uint16_t)present_mrad(s, j));
    for (uint8_t j = 0; j < n; j++, k += 2) put16(body + k, (uint16_t)s->vel[j]);
    body[k++] = m;
    for (uint8_t i = 0; i < m; i++, k += 2) put16(body + k, s->hal.read_sensor(i, s->hal.ctx));
    send_frame(s, LB_STATE, seq, body, k);
}

static void handle(lb_state *s, const uint8_t *f, uint8_t n, uint32_t now_ms) {
    uint8_t type = f[0], seq = f[1];
    const uint8_t *body = f + 2;
    uint8_t len = (uint8_t)(n - 4);
    s->last_rx_ms = now_ms;                 /* any valid frame feeds the watchdog */
    switch (type) {
    case LB_HELLO: {
        if (len != 1) { send_error(s, seq, LB_ERR_BAD_LENGTH, type); return; }
        if (body[0] != LB_PROTOCOL_VERSION) { send_error(s, seq, LB_ERR_VERSION, LB_PROTOCOL_VERSION); return; }
        s->ready = 1;
        s->tripped = 0;
        uint8_t ack[7] = {LB_PROTOCOL_VERSION, LB_FW_MAJOR, LB_FW_MINOR, s->n_joints, s->n_sensors, 0, 0};
        put16(ack + 5, s->watchdog_ms);
        send_frame(s, LB_HELLO_ACK, seq, ack, 7);
        return;
    }
    case LB_TARGETS: {
        if (!s->ready) { send_error(s, seq, LB_ERR_NOT_READY, type); return; }
        if (len < 1 || body[0] != s->n_joints || len != 1 + 2 * s->n_joints) {
            send_error(s, seq, LB_ERR_BAD_LENGTH, type);
            return;
        }
        if (s->estop) { send_error(s, seq, LB_ERR_ESTOP_ACTIVE, 0); send_state(s, seq); return; }
        for (uint8_t j = 0; j < s->n_joints; j++) {
            int16_t t = get16(body + 1 + 2 * j);
            if (t < s->min_mrad[j] || t > s->max_mrad[j]) {
                t = t < s->min_mrad[j] ? s->min_mrad[j] : s->max_mrad[j];
                send_error(s, seq, LB_ERR_RANGE, j);
            }
            s->target[j] = t;
        }
        s->tripped = 0;
        s->outputs_on = 1;
        send_state(s, seq);
        return;
    }
    case LB_HEARTBEAT:
        if (len != 0) { send_error(s, seq, LB_ERR_BAD_LENGTH, type); return; }
        send_state(s, seq);
        return;
    case LB_ESTOP:
        s->estop = 1;
        stop_motion(s);
        send_state(s, seq);
        return;
    case LB_CLEAR:
        s->estop = 0;
        s->tripped = 0;
        send_state(s, seq);
        return;
    default:
        send_error(s, seq, LB_ERR_UNKNOWN_TYPE, type);
    }
}

static void frame_done(lb_state *s, uint32_t now_ms) {
    uint8_t f[LB_MAX_WIRE];
    if (s->rx_overflow || s->rx_len == 0) {
        if (s->rx_overflow) { s->frames_bad++; send_error(s, 0, LB_ERR_BAD_FRAME, 0); }
        return;
    }
    int n = lb_cobs_decode(s->rx, s->rx_len, f);
    if (n < 4 || n > LB_MAX_FRAME) { s->frames_bad++; send_error(s, 0, LB_ERR_BAD_FRAME, (uint8_t)n); return; }
    uint16_t crc = (uint16_t)(f[n - 2] | (f[n - 1] << 8));
    if (lb_crc16(f, (uint16_t)(n - 2)) != crc) { s->frames_bad++; send_error(s, f[1], LB_ERR_BAD_CRC, f[0]); return; }
    s->frames_ok++;
    handle(s, f, (uint8_t)n, now_ms);
}

void lb_init(lb_state *s, const lb_hal *hal, uint8_t n_joints, uint8_t n_sensors, uint16_t watchdog_ms,
             uint32_t now_ms) {
    memset(s, 0, sizeof(*s));
    s->hal = *hal;
    s->n_joints = n_joints > LB_MAX_JOINTS ? LB_MAX_JOINTS : n_joints;
    s->n_sensors = n_sensors > LB_MAX_SENSORS ? LB_MAX_SENSORS : n_sensors;
    s->watchdog_ms = watchdog_ms;
    s->speed_mrad_s = 3000;
    for (uint8_t j = 0; j < LB_MAX_JOINTS; j++) { s->min_mrad[j] = -1571; s->max_mrad[j] = 1571; }
    s->last_rx_ms = s->last_tick_ms = now_ms;
}

void lb_rx_byte(lb_state *s, uint8_t b, uint32_t now_ms) {
    if (b == 0) {
        frame_done(s, now_ms);
        s->rx_len = 0;
        s->rx_overflow = 0;
        return;
    }
    if (s->rx_len < sizeof(s->rx)) s->rx[s->rx_len++] = b;
    else s->rx_overflow = 1;
}

void lb_tick(lb_state *s, uint32_t now_ms) {
    uint32_t dt = now_ms - s->last_tick_ms;
    if (dt == 0) return;
    s->last_tick_ms = now_ms;
    if (s->ready && !s->tripped && s->outputs_on && now_ms - s->last_rx_ms > s->watchdog_ms) {
        s->tripped = 1;                      /* host went quiet: stop where we are */
        stop_motion(s);
        send_error(s, 0, LB_ERR_WATCHDOG, 0);
    }
    int32_t step = (int32_t)s->speed_mrad_s * (int32_t)dt;   /* urad this tick */
    for (uint8_t j = 0; j < s->n_joints; j++) {
        int32_t err = (int32_t)s->target[j] * 1000 - s->pos_umrad[j];
        int32_t d = err > step ? step : (err < -step ? -step : err);
        if (!s->outputs_on) d = 0;
        s->pos_umrad[j] += d;
        s->vel[j] = (int16_t)(d / (int32_t)dt);              /* urad/ms == mrad/s */
        if (s->outputs_on) s->hal.set_servo(j, s->target[j], 1, s->hal.ctx);
    }
}
