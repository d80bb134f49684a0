// loopylab MCU bridge for Arduino-class boards: hobby servos on pins 3, 5, 6, 9 and analog sensors on
// A0, A1. The protocol core (loopylab_mcu.c/.h, copy them next to this sketch) is the same code the
// tests build for the host with gcc. Serial at 115200 8N1.
#include <Servo.h>
extern "C" {
#include "loopylab_mcu.h"
}

static const uint8_t SERVO_PINS[] = {3, 5, 6, 9};
static const uint8_t SENSOR_PINS[] = {A0, A1};
static const uint8_t N_JOINTS = sizeof(SERVO_PINS), N_SENSORS = sizeof(SENSOR_PINS);
static const uint16_t WATCHDOG_MS = 200;

static Servo servos[N_JOINTS];
static lb_state state;

static void hal_write(const uint8_t *data, uint16_t n, void *) { Serial.write(data, n); }

static void hal_set_servo(uint8_t j, int16_t mrad, uint8_t on, void *) {
  if (!on) { servos[j].detach(); return; }          // outputs off: the servo stops driving
  if (!servos[j].attached()) servos[j].attach(SERVO_PINS[j]);
  long us = 1500L + (long)mrad * 1000L / 1571L;      // +-90 degrees -> 500..2500 us
  servos[j].writeMicroseconds((int)us);
}

static uint16_t hal_read_sensor(uint8_t i, void *) { return (uint16_t)analogRead(SENSOR_PINS[i]); }

void setup() {
  Serial.begin(115200);
  lb_hal hal = {hal_write, hal_set_servo, hal_read_sensor, nullptr};
  lb_init(&state, &hal, N_JOINTS, N_SENSORS, WATCHDOG_MS, millis());
}

void loop() {
  while (Serial.available() > 0) lb_rx_byte(&state, (uint8_t)Serial.read(), millis());
  lb_tick(&state, millis());
}
