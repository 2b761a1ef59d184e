"""Helpers for driving admin forms the way a browser does."""


def change_form_data(response, **overrides) -> dict:
    """The POST a browser would send from a rendered admin change form, with
    `overrides` applied: the form's current values and each inline's
    management form and hidden ids."""
    data = {}

    def add(bound_field):
        value = bound_field.value()
        if value is None:
            return
        if isinstance(value, (list, tuple)):
            data[bound_field.html_name] = [str(item) for item in value]
        else:
            data[bound_field.html_name] = value

    for bound_field in response.context["adminform"].form:
        add(bound_field)
    for inline in response.context["inline_admin_formsets"]:
        formset = inline.formset
        for bound_field in formset.management_form:
            add(bound_field)
        for form in formset.forms:
            for bound_field in form:
                add(bound_field)
    data.update(overrides)
    return data
