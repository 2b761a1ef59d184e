from django import template

register = template.Library()


@register.filter
def ms(seconds):
    """Seconds as milliseconds for the status page; a dash when there is no figure."""
    return "–" if seconds is None else f"{seconds * 1000:.0f} ms"


@register.filter
def per_second(rate):
    return "–" if rate is None else f"{rate:.1f}/s"
