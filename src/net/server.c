int vg__net_placeholder;
