include $(sort $(wildcard $(BR2_EXTERNAL_PALISADE_PATH)/package/*/*.mk))
