/* Internal: small in-place text helpers for parsing environment values
 * (OTEL_RESOURCE_ATTRIBUTES, OTEL_EXPORTER_OTLP_HEADERS). */
#ifndef BASALT_TEXT_H
#define BASALT_TEXT_H

/* Decodes %XX escapes of s in place (the W3C baggage value format). */
void text_percent_decode(char *s);
/* Trims white space at both ends in place; returns the new start. */
char *text_trim(char *s);

#endif
